"""Saved eco-park policies (JSON); a package only so that wheels carry the files."""
