"""Package data: the paper's reported figures (CSV), read with importlib.resources."""
