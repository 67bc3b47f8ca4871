"""Inline completion: trigger -> context -> prompt -> generate -> postprocess."""
