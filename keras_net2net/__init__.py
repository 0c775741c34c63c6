"""keras-net2net."""
