"""benchmarks/run_all.py --summary-only: every result file is read, every number keeps its device."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_from_synthetic_results(run_all, tmp_path):
    row = {"config": "paper", "dtype": "bfloat16", "batch": 32, "params_total_M": 114.9, "image_size": 512,
           "encode_gflops_per_frame": 1789.0, "decode_gflops_per_frame": 532.7, "decode_fps": 681.5,
           "decode_ms_per_frame": 1.47, "decode_tflops_achieved": 363.0, "peak_memory_gib": 9.2}  # fmt: skip
    gpu = {"benchmark": "face_latent", "device": "NVIDIA_H100_80GB_HBM3", "device_kind": "NVIDIA H100 80GB HBM3",
           "rows": [row]}  # fmt: skip
    (tmp_path / "face_latent-NVIDIA_H100_80GB_HBM3-2026-01-01.json").write_text(json.dumps(gpu))
    cpu_step = {"benchmark": "train_motion", "device": "cpu-2core-x86_64", "cpu_count": 2,
                "rows": [{"config": "tiny", "devices": 2, "batch": 16, "precision": "float32", "step_s": 0.05,
                          "windows_per_s": 320.0, "weak_scaling_eff": 0.5}]}  # fmt: skip
    anim = {"config": "tiny", "dtype": "float32", "fps": 58.5, "first_frame_s": 0.1435, "steady_fps": 56.8,
            "s_per_audio_s": 0.43, "frame_size": [64, 64], "steps": 10}  # fmt: skip
    results = {"train_motion-cpu-2core-x86_64-2026-01-02.json": cpu_step,
               "animate-cpu-2core-x86_64-2026-01-02.json": {"device": "cpu-2core-x86_64", "rows": [anim]}}  # fmt: skip
    quick = {"benchmark": "run_all", "device": "cpu-2core-x86_64", "runs": [], "results": results}
    (tmp_path / "run_all-cpu-2core-x86_64-2026-01-02.json").write_text(json.dumps(quick))
    (tmp_path / "weird-cpu-2026-01-01.json").write_text(json.dumps({"device": "cpu", "rows": [{"x": 1}]}))
    busy = {"measured": True, "contended": True, "others_share": 0.62, "discarded": 5}
    motion = [{"config": "tiny", "steps": 10, "batch": 1, "dtype": "float32", "ms_per_window": 9.0, "contention": busy},
              {"config": "small", "steps": 10, "batch": 1, "dtype": "float32", "ms_per_window": 90.0,
               "contention": dict(busy, contended=False, others_share=0.02)}]  # fmt: skip
    (tmp_path / "motion-cpu-2core-x86_64-2026-01-03.json").write_text(json.dumps({"results": motion}))
    t = run_all.collect(tmp_path)
    (roof,) = t.rows["roofline"]
    assert roof["device"] == "NVIDIA H100 80GB HBM3" and roof["fraction of peak"] == pytest.approx(363 / 989)
    (train,) = t.rows["train"]
    assert train["device"] == "2-core CPU" and train["scaling eff."] == 0.5 and "(quick)" in train["source"]
    md = run_all.summary_markdown(t)
    (stream,) = t.rows["stream"]
    assert stream["first frame (ms)"] == pytest.approx(143.5) and stream["device"] == "2-core CPU"
    assert "36.7%" in md and "682 fps" in md and "first frame 144 ms" in md
    assert all(r["device"] for rows in t.rows.values() for r in rows if "device" in r)
    marks = {r["config"]: r["result"] for r in t.rows["infer"] if r["what"].startswith("motion window")}
    assert "⚠ contended: other processes used 62% of the CPUs" in marks["tiny"] and "⚠" not in marks["small"]


def test_summary_only_reads_the_committed_results(run_all, tmp_path):
    out = tmp_path / "summary.md"
    assert run_all.main(["--summary-only", "--out", str(out)]) == 0
    md = out.read_text()
    assert "## Roofline (GPU)" in md and "2-core CPU" in md and "unreadable" not in md


def test_summary_renders_zoo_rows(run_all, tmp_path):
    busy = {"measured": True, "contended": True, "others_share": 0.55, "discarded": 4,
            "parts": {"render": {"measured": True, "contended": True, "others_share": 0.55},
                      "encode": {"measured": True, "contended": False, "others_share": 0.02}}}  # fmt: skip
    lp = {"model": "liveportrait", "config": "paper", "dtype": "float32", "batch": 1, "image_size": 256,
          "output_size": 512, "num_kp": 21, "params_M": 49.1, "encode_gflops": 30.0, "render_gflops_per_frame": 510.0,
          "encode_ms": 120.0, "render_ms_per_frame": 900.0, "render_fps": 1.11, "render_tflops_achieved": 0.57,
          "torch_render_ms_per_frame": 1800.0, "jax_over_torch_render": 0.5, "torch_encode_ms": 240.0,
          "jax_over_torch_encode": 0.5, "contention": busy}  # fmt: skip
    jv = {"model": "joyvasa", "config": "paper", "dtype": "bfloat16", "batch": 1, "steps": 50, "cfg_scale": 2.8,
          "cfg_branches": 2, "window": 100, "context": 25, "layers": 8, "width": 512, "params_M": 30.0,
          "audio_params_M": 94.4, "audio_encoder": {"layers": 12, "hidden_size": 768}, "gflops_per_window": 800.0,
          "gflops_per_frame": 8.0, "audio_gflops_per_audio_s": 70.0, "ms_per_window": 400.0, "motion_fps": 250.0,
          "realtime_factor": 10.0, "realtime_factor_with_audio": 9.0, "audio_s_per_s": 80.0,
          "audio_ms_per_audio_s": 12.5, "achieved_tflops": 2.0, "peak_memory_gib": 1.5}  # fmt: skip
    doc = {"benchmark": "zoo", "device": "NVIDIA_H200", "device_kind": "NVIDIA H200", "rows": [lp, jv]}
    (tmp_path / "zoo-NVIDIA_H200-2026-01-01.json").write_text(json.dumps(doc))
    t = run_all.collect(tmp_path)
    sizes = {r["model"]: r for r in t.rows["size"]}
    assert set(sizes) == {"LivePortrait (zoo)", "JoyVASA DiT (zoo)", "JoyVASA audio encoder (zoo)"}
    assert "render (W+G) 510" in sizes["LivePortrait (zoo)"]["GFLOP/frame"]
    infer = {r["what"]: r for r in t.rows["infer"]}
    render = infer["LivePortrait render (W+G)"]["result"]
    assert "torch CPU 1,800 ms/frame (JAX/torch 0.5)" in render and "⚠ contended" in render
    assert "⚠" not in infer["LivePortrait encode (F+M)"]["result"]
    window = infer["JoyVASA window, 50 steps, CFG 2.8, 2 branches"]
    assert "250 motion frames/s" in window["result"] and window["peak mem (GiB)"] == 1.5
    assert window["device"] == "NVIDIA H200"
    assert "80 s of audio per s" in infer["JoyVASA audio encoder (HuBERT)"]["result"]
    assert {r["what"] for r in t.rows["roofline"]} == {"LivePortrait render (W+G)", "JoyVASA window, 50 steps"}
    assert "unreadable" not in run_all.summary_markdown(t)


def test_summary_reads_live_rows_step_breakdowns_and_recipes(run_all, tmp_path):
    anim = {"config": "tiny", "fps": 250.0, "first_frame_s": 0.04, "steady_fps": 260.0, "frame_size": [64, 64],
            "steps": 10, "live_first_frame_after_audio_s": 0.2085, "live_steady_fps": 26.3, "live_keeps_up": True,
            "live_first_window_frames": 4}  # fmt: skip
    (tmp_path / "animate-cpu-2core-x86_64-2026-01-01.json").write_text(json.dumps({"rows": [anim]}))
    seconds = {"G3D": 1.25, "appearance encoder": 0.9, "warp to driver + resample": 0.5, "G2D + pixel warp": 0.35,
               "trainer generator step (CPU recipe)": 4.0}  # fmt: skip
    tf = {"device": "cpu-2core-x86_64", "batch": 2, "designs": {"small": {"seconds": seconds, "samples_per_s": 0.5}}}
    (tmp_path / "train_face-cpu-2core-x86_64-2026-01-01.json").write_text(json.dumps(tf))
    recipe = {"device": "NVIDIA H200 (143,771 MiB), driver 580", "settings": {"stage1": "small_warp, full objective"},
              "seconds": {"synthtalk (132 clips)": 52, "stage 1: per step after compilation (batch 16)": 0.167},
              "throughput": {"stage 1 samples/s (batch 16)": 95.6}}  # fmt: skip
    (tmp_path / "demo_recipe-nvidia-h200-2026-01-01.json").write_text(json.dumps(recipe))
    t = run_all.collect(tmp_path)
    live = [r for r in t.rows["stream"] if r["what"].startswith("animate live")]
    assert len(live) == 1 and live[0]["first frame (ms)"] == pytest.approx(208.5)
    assert live[0]["steady fps"] == "26.3 (keeps up)" and "first window after 4 frames" in live[0]["what"]
    (part,) = t.rows["breakdown"]
    assert part["parts (s, forward + backward)"].startswith("G3D 1.25, appearance encoder 0.9")
    assert part["3D parts"] == pytest.approx((1.25 + 0.5) / 4.0)  # G3D + the warps, not G2D's pixel warp
    steps = {r["device"]: r for r in t.rows["train"]}
    assert steps["NVIDIA H200"]["batch"] == 16 and steps["NVIDIA H200"]["samples/s"] == 95.6
    assert steps["NVIDIA H200"]["config"] == "small_warp" and steps["2-core CPU"]["step (s)"] == 4.0
    assert [r["result"] for r in t.rows["other"]] == ["52 s"]
    md = run_all.summary_markdown(t)
    assert "unreadable" not in md and "| 43.8% |" in md
