"""The Hydra config tree, installed with the code as the package ``robopolicy_conf`` (see
robopolicy/config/locate.py, which finds it)."""
