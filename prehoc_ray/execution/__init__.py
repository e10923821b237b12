"""Ray execution: a pool of slot actors for the live candidates, the engine's rounds on the
cluster, nothing lost. The only package that imports Ray.

    driver.py     the round loop: engine orders -> Ray probes -> result store -> engine
    probes.py     the device work: static signals and single-worker probes as Ray tasks
    train_probe.py a multi-GPU probe as one Ray Train run (TorchTrainer)
    train_deadline.py the Train run's own abort at the probe timeout
    actors.py     SlotActor: mirrors one live candidate at a time, reloaded from the store on restart
    pool.py       the slots (as many as probes run at once) and which candidate each serves
    ledger.py     the driver's view of the store: finished, failed, attempts; probe_runs/
    resources.py  what one probe asks for (CPU, GPU fraction, N Train workers packed on one node); feasibility
    cluster.py    ray.init: an address, RAY_ADDRESS, or an embedded local Ray
    telemetry.py  ray.util.metrics (charted by cluster/grafana-dashboard.json)
    progress.py   rich progress bar on a terminal, log lines elsewhere
    outputs.py    static/candidates/spend tables of the run directory
    simulated.py  backend: simulated, the spec's candidates on synthetic curves
    jobs_client.py the Ray Jobs API for `prehoc-ray submit` (request, token transport, status, logs)

Kept import-light on purpose: Ray workers import the submodules they need, not this package's
whole surface. Entry point: `prehoc_ray.execution.driver.Driver(spec, run_dir).run()`.
"""
