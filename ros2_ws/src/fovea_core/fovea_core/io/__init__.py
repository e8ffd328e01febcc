"""File formats the methods read and write (point clouds as numpy structured arrays)."""
