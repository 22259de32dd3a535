"""Our own MJCF files (the tabletop scene). A package only so that installs ship the XML."""
