"""The example's `serve`: start nginx and gunicorn (sync workers, one per core), wait until either exits.

Usage: python bench/baseline/serve.py PORT RUN_DIR   (OPT_ML_ROOT points at the model's /opt/ml root)
"""
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
cpu_count = multiprocessing.cpu_count()
model_server_timeout = os.environ.get("MODEL_SERVER_TIMEOUT", 60)
model_server_workers = int(os.environ.get("MODEL_SERVER_WORKERS", cpu_count))


def sigterm_handler(nginx_pid, gunicorn_pid):
    for pid, sig in ((nginx_pid, signal.SIGQUIT), (gunicorn_pid, signal.SIGTERM)):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    sys.exit(0)


def start_server(port, run, nginx_bin):
    print("Starting the inference server with {} workers.".format(model_server_workers), flush=True)
    run.mkdir(parents=True, exist_ok=True)
    conf = (HERE / "nginx.conf").read_text()
    conf = conf.replace("@RUN@", str(run)).replace("@PORT@", str(port))
    # As root, nginx's workers would drop to nobody and could not open gunicorn's socket.
    conf = conf.replace("@USER@", "user root;" if os.geteuid() == 0 else "")
    (run / "nginx.conf").write_text(conf)
    nginx = subprocess.Popen([nginx_bin, "-c", str(run / "nginx.conf"), "-e", str(run / "nginx-error.log")])
    gunicorn = subprocess.Popen([
        sys.executable, "-m", "gunicorn",
        "--timeout", str(model_server_timeout),
        "-k", "sync",
        "-b", "unix:{}/gunicorn.sock".format(run),
        "--control-socket", "{}/gunicorn.ctl".format(run),  # gunicorn 27 default is per-user: runs would collide
        "-w", str(model_server_workers),
        "--chdir", str(HERE),
        "wsgi:app",
    ])
    signal.signal(signal.SIGTERM, lambda a, b: sigterm_handler(nginx.pid, gunicorn.pid))
    pids = {nginx.pid, gunicorn.pid}
    while True:
        pid, _ = os.wait()
        if pid in pids:
            break
    sigterm_handler(nginx.pid, gunicorn.pid)
    print("Inference server exiting")


if __name__ == "__main__":
    start_server(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "nginx")
