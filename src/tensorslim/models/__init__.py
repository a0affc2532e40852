"""Reference CNNs and the builder registry.

Built-in models (``names()``): ``lenet5``, ``convnet`` (1×28×28), ``resnet20``, ``resnet32``, ``resnet56``,
``vgg16``, ``mobilenetv2`` (3×32×32). Each takes ``in_channels``, ``num_classes`` and ``input_size`` (int or
(H, W); it sizes the flatten+FC head where there is one, and is only checked where global pooling makes the
head size-independent). Heads are explicit ``nn.Flatten`` + ``nn.Linear`` modules under ``classifier``; the
convolutions live under ``features``.

``build_spec({"builder": ..., "kwargs": {...}})`` also accepts ``"package.module:factory"`` and
``"path/to/file.py:factory"``, so user models (or torchvision's, where installed) go through the same path.
"""

from .registry import (
    ModelInfo,
    build,
    build_spec,
    default_input_shape,
    info,
    names,
    resolve_factory,
    summary_rows,
)

__all__ = ["ModelInfo", "build", "build_spec", "default_input_shape", "info", "names", "resolve_factory",
           "summary_rows"]
