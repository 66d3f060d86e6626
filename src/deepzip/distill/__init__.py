"""Knowledge distillation as loss functions for `dz.train`: soft targets (Hinton et al. 2015),
hint regressors on intermediate features (FitNets, Romero et al. 2015), and an adversarial loss
whose discriminator tells the teacher's features from the student's; DistillLoss weighs the
three (λ1, λ2, λ3), so a smaller student can learn from a larger or a compressed teacher."""
from .adversarial import AdversarialLoss
from .hints import FeatureTap, HintLoss
from .loss import DistillLoss
from .soft import SoftTargetLoss, check_distillation, soft_target_loss

__all__ = ["AdversarialLoss", "DistillLoss", "FeatureTap", "HintLoss", "SoftTargetLoss", "check_distillation",
           "soft_target_loss"]
