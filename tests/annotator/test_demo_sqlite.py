"""The demo's SQLite database, written by the web server and the worker at once: a request
that reads and then writes in one transaction (lease release, Done, proposal accept) must
wait for the worker's write, not fail at once with "database is locked" (a 500 seen when an
annotator pressed N while the worker stored proposals)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json, threading, time
    import django
    django.setup()
    from django.db import connection, connections, transaction

    with connection.cursor() as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)")
        c.execute("INSERT INTO t (who) VALUES ('seed')")
    connection.close()
    a_read, b_wrote = threading.Event(), threading.Event()
    errors = []

    def web():  # read, then write, in one atomic block (as workflow.lease_release)
        try:
            with transaction.atomic():
                with connection.cursor() as c:
                    c.execute("SELECT who FROM t WHERE id = 1")
                    a_read.set()
                    b_wrote.wait(1.0)
                    time.sleep(0.3)  # the worker is committing now
                    c.execute("UPDATE t SET who = 'web' WHERE id = 1")
        except Exception as e:
            errors.append(f"web: {e}")
        finally:
            connections.close_all()

    def worker():
        a_read.wait(5)
        try:
            with transaction.atomic():
                with connection.cursor() as c:
                    c.execute("INSERT INTO t (who) VALUES ('worker')")
                    b_wrote.set()
        except Exception as e:
            errors.append(f"worker: {e}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=web), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with connection.cursor() as c:
        c.execute("SELECT who FROM t ORDER BY id")
        rows = [r[0] for r in c.fetchall()]
    print(json.dumps({"errors": errors, "rows": rows}))
""")


def test_demo_sqlite_read_then_write_waits_for_the_worker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update({"DJANGO_SETTINGS_MODULE": "annotator.settings", "ANNOTATOR_VAR_DIR": str(tmp_path),
                "MEDIA_ROOT": str(tmp_path / "media")})
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["rows"] == ["web", "worker"]
