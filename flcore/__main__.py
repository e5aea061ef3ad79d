import sys

from flcore.sim import memory

memory.tune()  # before torch is imported

from flcore.cli import main  # noqa: E402

sys.exit(main())
