"""tensorslim."""
