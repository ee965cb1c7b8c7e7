"""Run by tests/test_spark_online.py in the background: a training stream (sparkgmm.spark.streaming.train_on) over
the Parquet files of FILES_DIR that this process SIGKILLs itself in, right after the version of micro-batch KILL_AT
is written and before the LATEST pointer names it (the worst moment to die). The test restarts the query from
CHECKPOINT and compares its end with an uninterrupted run.

    python probe_stream_kill.py FILES_DIR MODEL_DIR CHECKPOINT KILL_AT

Exit: killed by SIGKILL (the test expects it); 3 when the stream ended without reaching KILL_AT.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import STREAM_CONF, stream_of, stream_start_model

from sparkgmm.spark import streaming
from sparkgmm.spark.session import local_session


def main(files_dir: str, model_dir: str, checkpoint: str, kill_at: int) -> int:
    spark = local_session("local[2]", "probe-stream-kill", **STREAM_CONF)
    spark.sparkContext.setLogLevel("ERROR")
    write_version = streaming.ModelDirectory.write_version

    def write_then_die(self, batch_id, model):
        write_version(self, batch_id, model)
        if batch_id == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    streaming.ModelDirectory.write_version = write_then_die
    stream = streaming.train_on(stream_of(spark, files_dir), stream_start_model(), model_dir, checkpoint,
                                keep=10, trigger={"availableNow": True})
    stream.await_termination()
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
