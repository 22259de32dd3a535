"""The one packaging rule pyproject.toml cannot state: conf/ (kept at the repository root, as the
layout has it) is installed as the package ``robopolicy_conf``, a name pyproject's package
discovery cannot give a folder. Everything else about the package is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

CODE = ["robopolicy*", "sim*", "hardware*", "hydra_plugins*"]  # hydra_plugins: registers the
#   config schemas for any Hydra composition of conf/

setup(
    packages=[
        *find_namespace_packages(include=CODE),
        "robopolicy_conf",
        *(f"robopolicy_conf.{group}" for group in find_namespace_packages(where="conf")),
    ],
    package_dir={"robopolicy_conf": "conf"},
)
