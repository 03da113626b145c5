"""The ``poseprior`` command line.

``poseprior list`` names the registered priors and layouts; ``poseprior demo`` fits every
registered prior on the bundled CMU sample (or ``--data DIR``) and prints the table of validation
NLL / bits per dimension. ``poseprior train`` trains one prior with PyTorch Lightning
(TensorBoard logs, checkpoints, ``--resume``, multi-process ``--strategy ddp``); ``eval`` prints the
NLL/BPD table of checkpoints on a data folder; ``sample`` draws poses (and a stick-figure PNG);
``convert`` changes the joint layout or rotation representation of npz pose files; ``export``
turns a Lightning ``.ckpt`` into a ``config.json`` + ``model.safetensors`` folder; ``bench``
runs the density, sample-quality and speed benchmark.

One module per command (``list``, ``demo``, ``train``, ``eval``, ``sample``, ``convert``,
``export``, ``bench``), each with ``add_parser(subparsers)`` and ``run(args)``; the helpers they
share are in :mod:`poseprior.cli.common`, and :mod:`poseprior.cli.main` assembles the parser.

The files ``train`` writes are listed in :mod:`poseprior.cli.train`.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
