"""YAML configurations (model, data sets, training defaults) and tuning spaces, shipped as bert4rec_hf.configuration."""
