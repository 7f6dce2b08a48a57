"""VASA-1's face latent model as a trainable renderer (``vasajax.stages.RENDERER_TRAINING["vasa"]``).

``vasajax train-face`` runs one loop for every trainable renderer (``vasajax.train.face``: mesh, sharded state, the
patch discriminator, orbax checkpoints with exact resume, EMA, sample grids). What is particular to a model comes
from its entry (``vasajax.stages.RendererTraining``): its configs and presets, how it is built, which loader fields
its objective reads, the objective itself, how it reenacts a face for the sample grids, and its export files. This
is the entry of ``vasajax.face.model.FaceLatentModel`` with MegaPortraits' objective plus VASA-1's consistency and
identity terms (``vasajax.face.losses``), exported as ``face.safetensors`` + config.json's ``face`` section.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from vasajax import config_io
from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.face import losses
from vasajax.face.config import FaceConfig
from vasajax.face.model import FaceLatentModel

PRESETS = ("tiny", "small", "small_warp", "paper")


class VasaRendererTraining:
    """Trainable renderer ``"vasa"``: VASA-1's face latent model (the default of ``train-face``)."""

    name = "vasa"
    stage_name = "vasa"
    motion_space = "vasa"
    precisions = ("float32", "bfloat16")
    model_config = FaceConfig
    loss_config = losses.FaceLossConfig

    @staticmethod
    def presets(name: str, vgg_weights: str | None = None) -> tuple[FaceConfig, losses.FaceLossConfig]:
        """``tiny`` (64²), ``small`` (the 256² demo), ``small_warp`` (``small`` with the pixel-warp decoder and the
        mouth and pose terms at weight 10: the design that learns fastest on a CPU), ``paper`` (MegaPortraits'
        sizes at 512²)."""
        if name == "tiny":
            return FaceConfig.tiny(), losses.FaceLossConfig.tiny(vgg_weights)
        if name == "small":
            return FaceConfig.small(), losses.FaceLossConfig.small(vgg_weights)
        if name == "small_warp":
            loss = losses.FaceLossConfig.small(vgg_weights, mouth_weight=10.0, pose_weight=10.0)
            return FaceConfig.small_warp(), loss
        if name == "paper":
            return FaceConfig.paper(), losses.FaceLossConfig.paper(vgg_weights)
        raise UserError(f"no preset {name!r} for renderer vasa; known: {', '.join(PRESETS)}")

    @staticmethod
    def with_dtype(cfg: FaceConfig, dtype: str) -> FaceConfig:
        return dataclasses.replace(cfg, dtype=dtype)

    @staticmethod
    def frame_size(cfg: FaceConfig) -> int:
        return int(cfg.image_size)

    @staticmethod
    def build(cfg: FaceConfig, rngs: nnx.Rngs) -> FaceLatentModel:
        return FaceLatentModel(cfg, rngs=rngs)

    @staticmethod
    def trainable():
        return nnx.Param

    @staticmethod
    def batch_keys(loss_cfg: losses.FaceLossConfig) -> tuple[str, ...]:
        """The frames, plus the labels its optional terms read (mouth box, tracker poses, blendshapes, landmarks)."""
        return (
            ("source", "driver", "cross")
            + (("driver_mouth_4",) if loss_cfg.mouth_weight > 0 else ())
            + (("source_pose_6", "driver_pose_6") if loss_cfg.pose_weight > 0 else ())
            + (("source_blendshapes_52", "driver_blendshapes_52") if loss_cfg.expression_weight > 0 else ())
            + (
                ("source_landmarks_Kx2", "driver_landmarks_Kx2")
                if loss_cfg.flow_weight > 0 or loss_cfg.landmark_weight > 0
                else ()
            )
        )

    @staticmethod
    def loss(model, critics, disc, batch, loss_cfg, key):
        del key  # the objective is deterministic
        loss, (metrics, outputs) = losses.generator_loss_and_outputs(model, critics, disc, batch, loss_cfg)
        return loss, (metrics, outputs["fakes"])

    @staticmethod
    def reenact(model: FaceLatentModel, source, driver):
        return model.reenact(source, driver)

    @staticmethod
    def export_files(cfg: FaceConfig, model: FaceLatentModel) -> dict[str, Any]:
        """``face.safetensors`` and a config.json with the ``face`` section and the square crop at its size (the
        motion generator's part is added by ``vasajax export`` when a motion run is given). The crop is
        facetrack's default at the model's size (its other fields default when read back)."""
        return {
            ef.FACE_FILE: (ef.model_tensors(model), {"model": "face"}),
            ef.CONFIG_FILE: {"format": ef.FORMAT, "face": config_io.to_dict(cfg), "crop": {"size": cfg.image_size}},
        }
