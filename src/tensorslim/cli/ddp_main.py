"""Entry point for data-parallel fine-tuning: ``torchrun --nproc-per-node 2 -m tensorslim.cli.ddp_main PATH
--data NAME --schedule ... --out DIR`` (the options of ``tensorslim finetune``; ``--batch-size`` is global).

Every process runs the same command; the process group comes from torchrun's environment (gloo on CPU, nccl
on GPU), each process trains on its shard, rank 0 alone writes the output directory. Without torchrun it runs
as one process. Errors print one line (``error: ...``) and exit with status 2, as the CLI does.
"""

from __future__ import annotations

import os
import sys

import click

from .. import distributed
from ..errors import TensorSlimError
from .finetune import finetune_cmd


def main(argv: list[str] | None = None) -> None:
    try:
        info = distributed.init_from_env()
        if info.active and info.rank != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - one log, from rank 0
        finetune_cmd.main(args=argv, prog_name="tensorslim.cli.ddp_main", standalone_mode=False)
    except TensorSlimError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: the last completed step's model directory is intact; rerun to resume", err=True)
        sys.exit(130)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
