"""The pure stack model: stack files, profiles, cells and rendering. No I/O but reading files."""
