"""humanclap: fine-tune CLAP toward human perception, and measure whether it worked."""

__version__ = "0.1.0"
