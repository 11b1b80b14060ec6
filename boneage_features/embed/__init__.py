"""CNN part of the package: the only subpackage that imports torch.

:mod:`.backbone` builds the bone-age network (ImageNet EfficientNet-Lite0 on one gray channel, a
small head fused with sex) and saves/loads it compactly; :mod:`.train` fine-tunes it on uint8
image tensors held in (GPU) memory and predicts months and pooled embeddings; :mod:`.embedder`
turns it into features for the boosters (:class:`CNNEmbedder`). Importing this package does not
import torch: the embedder imports it only when it runs the network.
"""

from .embedder import CNNEmbedder

__all__ = ["CNNEmbedder"]
