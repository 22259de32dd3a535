"""sim.suites registers its ids and experts without importing robosuite or metaworld."""

from __future__ import annotations

import subprocess
import sys


def test_import_registers_ids_and_experts_without_importing_the_suites():
    code = (
        "import sys, gymnasium as gym, sim.suites, sim.experts as E\n"
        "ids = ['robosuite/Lift-v0', 'robosuite/PickPlaceCan-v0',\n"
        "       'robosuite/NutAssemblySquare-v0', 'metaworld/push-v3']\n"
        "assert all(i in gym.registry for i in ids), ids\n"
        "assert all(i in E._FACTORIES for i in ids)\n"
        "assert 'robosuite' not in sys.modules and 'metaworld' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
