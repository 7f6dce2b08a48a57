"""SynthTalk: an offline, learnable talking-face dataset (DESIGN.md, "SynthTalk").

VASA-1 trains its motion model (§3.2) on talking-face videos labelled with head pose, gaze, head distance
and emotion. None can be downloaded here, so SynthTalk makes such clips from a real portrait photo and a
sentence: espeak-ng speaks the sentence (``speech.py``) and reports phoneme timings; a phoneme → viseme
table (``visemes.py``) gives jaw/lip targets; head sway and nods, blinks every 2–6 s, gaze shifts and a
smile (the emotion factor) are sampled from simple stochastic models. The portrait's 478 MediaPipe
landmarks are moved in 3D (mouth shapes, eyelids and iris in a face-local frame, then a rigid head
rotation about a pivot behind the face) and the photo is warped piecewise-affinely along the canonical
face mesh; two rings of control points carry hair and neck along (the neck less), while the image border
stays still. The mouth interior (dark cavity, upper teeth, tongue) is painted where the lips part.

Every frame comes with exact ground truth (the rendered landmarks, pose, mouth opening, blink, gaze,
emotion, phoneme and viseme), so lip-sync, pose and gaze control are measurable. SynthTalk is a teaching
and testing set — a warped still photo with synthetic speech — not a substitute for real video data.

    from vasajax.data.speech import Voice
    from vasajax.data.synth.clip import synthesize_clip, write_clip
    from vasajax.data.synth.config import SynthConfig
    from vasajax.data.synth.inputs import load_portraits
    from vasajax.data.synth.portrait import prepare_portraits

    cfg = SynthConfig.small()
    portraits = prepare_portraits(load_portraits(), cfg)           # bundled astronaut + grace_hopper
    clip = synthesize_clip(portraits[0], "Hello there.", Voice(variant="f3"), seed=0, cfg=cfg)
    write_clip(clip, "out/", "clip0000")        # clip0000.mp4 / .wav / .npz / .json
    vasajax synth --out DIR --num-clips 100     # the CLI (cli.py)

The dataset recipe: clip-record shards (the format ``vasajax prep`` writes; tracker labels, ground truth in
each record) for a train split and a held-out split (unseen sentences, voice, optionally portrait), in local
worker processes (``vasajax.data.synth.shards``; N=200 at 256²: 325 CPU-s, ~3 min wall on an idle 2-core CPU)::

    vasajax synth --shards --out data/synthtalk-small --num-clips 200 --size 256 --workers 2

One idea per module, each depending only on those above it:

- ``config``: :class:`~vasajax.data.synth.config.SynthConfig`, how clips look and move.
- ``landmarks``: the landmark groups SynthTalk moves (lips, eyelids, irises, face oval).
- ``curves``: ``smoothstep``, shared by the rig and the motion.
- ``portrait``: the portrait rig (crop, face-local frame, deformation bases, triangulation): ``prepare_portrait(s)``.
- ``motion``: ``sample_motion``, per-frame parameters from the phoneme timings and a seed.
- ``deform``: ``pose_landmarks``, one frame's landmarks, control rings and eyeball shifts.
- ``mouth``: ``paint_mouth``, the mouth interior painter.
- ``raster``: ``render_frame``, the mesh rasteriser (piecewise-affine warp along the triangulation).
- ``clip``: ``synthesize_clip`` (speech + motion + frames + ground truth) and ``write_clip``.
- ``inputs``: ``load_sentences`` (train / held-out split) and ``load_portraits``.
- ``shards``: the dataset recipe: split planning, tracking, clip records in shards, worker processes, resume.
- ``cli``: ``vasajax synth`` (clips as files, or ``--shards`` through ``shards``).
"""
