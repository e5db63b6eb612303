"""The app layer: the `rfcx-kit` commands, thin layers over the library (argument parsing, messages)."""
