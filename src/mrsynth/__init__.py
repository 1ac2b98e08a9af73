"""mrsynth: predict a T2-weighted MRI volume from a T1-weighted one (plus tissue masks)."""

__version__ = "0.1.0"
