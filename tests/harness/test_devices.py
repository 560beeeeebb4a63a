"""Workers spread over GPUs (a pure function of the device counts; no GPU needed)."""

import pytest

from harness.devices import GPU_WORKER_THREADS, WorkerPlacement, plan_devices


def test_two_workers_on_two_listed_gpus_get_one_gpu_each():
    plan = plan_devices("cuda:0,cuda:1", workers=2, gpu_count=2, cpu_count=16)
    assert [p.device for p in plan] == ["cuda:0", "cuda:1"]
    assert [p.worker for p in plan] == [0, 1] and all(p.threads == GPU_WORKER_THREADS for p in plan)


def test_cuda_deals_workers_round_robin_over_every_gpu():
    assert [p.device for p in plan_devices("cuda", 4, gpu_count=4, cpu_count=32)] == [f"cuda:{i}" for i in range(4)]
    more = plan_devices("cuda", 5, gpu_count=2, cpu_count=2)
    assert [p.device for p in more] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert all(p.threads == 1 for p in more)  # 2 cores for 5 workers: never 0 threads
    assert [p.device for p in plan_devices("cuda", 1, gpu_count=3, cpu_count=8)] == ["cuda:0"]


def test_a_picked_list_uses_only_those_gpus():
    plan = plan_devices("cuda:0, cuda:2", workers=3, gpu_count=4, cpu_count=12)
    assert [p.device for p in plan] == ["cuda:0", "cuda:2", "cuda:0"]


def test_cpu_and_auto_share_the_cores():
    assert plan_devices("cpu", 2, gpu_count=4, cpu_count=16) == [
        WorkerPlacement(0, "cpu", 8),
        WorkerPlacement(1, "cpu", 8),
    ]
    assert [p.device for p in plan_devices("auto", 2, gpu_count=0, cpu_count=2)] == ["cpu", "cpu"]
    assert [p.device for p in plan_devices("auto", 2, gpu_count=2, cpu_count=2)] == ["cuda:0", "cuda:1"]


@pytest.mark.parametrize(
    ("device", "gpus", "message"),
    [
        ("cuda", 0, "no GPU"),
        ("cuda:2", 2, "only 2 GPU"),
        ("cuda:0,cuda:0", 2, "twice"),
        ("tpu", 2, "device must be"),
        ("cuda:x", 2, "device must be"),
    ],
)
def test_impossible_placements_are_refused(device, gpus, message):
    with pytest.raises(ValueError, match=message):
        plan_devices(device, 2, gpu_count=gpus, cpu_count=4)
    with pytest.raises(ValueError, match="workers"):
        plan_devices("cpu", 0, gpu_count=0, cpu_count=4)


def test_the_plan_places_every_worker_and_refuses_gpus_this_machine_lacks(tmp_path):
    from harness import runner, studies
    from harness.run.record import run_tags

    study = studies.from_dict(
        {
            "name": "placed",
            "variants": ["carat"],
            "seeds": [1],
            "epochs": 1,
            "dataset": "synthetic",
            "dataset_options": {"size": "tiny", "seq_len": 8},
        }
    )
    options = runner.RunOptions(workers=2, progress=False, storage=str(tmp_path / "j"))
    plan = runner.make_plan(study, options)
    assert [p.device for p in plan.placements] == ["cpu", "cpu"]
    assert all(p.threads >= 1 for p in plan.placements)
    unit = plan.repeat_units()[0]
    tags = run_tags(plan, unit, 0, "q", plan.placements[1].device)
    assert tags["device"] == "cpu" and tags["gpu_name"] == "none"  # each run says where it trained
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(studies.StudyError, match="cuda:0,cuda:1"):
            runner.make_plan(study, runner.RunOptions(workers=2, device="cuda:0,cuda:1", progress=False))
