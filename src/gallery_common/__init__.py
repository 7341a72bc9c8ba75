"""Code shared by the hub and the builder: settings parsing and secret files."""
