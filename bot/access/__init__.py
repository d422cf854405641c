"""Access control: who may ask, what they may see, and how often."""
