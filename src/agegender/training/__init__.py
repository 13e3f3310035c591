"""Training: configs, the Lightning data module and model, and the train entry point."""
