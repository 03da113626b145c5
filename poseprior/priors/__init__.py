"""The registered priors. Importing this package fills the registry, one explicit import each."""

from .gaussian import GaussianPrior
from .global_flow import GlobalFlowPrior
from .gmm import GMMPrior
from .hand_vae import HandVAEPrior
from .joint_flow import JointFlowPrior
from .vae import VAEPrior

__all__ = ["GMMPrior", "GaussianPrior", "GlobalFlowPrior", "HandVAEPrior", "JointFlowPrior", "VAEPrior"]
