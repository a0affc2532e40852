"""``python -m tensorslim.cli ...`` (and ``torchrun -m tensorslim.cli finetune ...``): the ``tensorslim`` command."""

from . import main

main()
