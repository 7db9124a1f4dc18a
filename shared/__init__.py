"""The library every taskstream service imports."""
