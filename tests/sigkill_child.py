"""The child-process script of the SIGKILL-during-save tests (pretraining and fine-tuning resume)."""

# Runs the ``lmforge`` CLI with one thread; with KILL_AT_STEP set, it SIGKILLs itself halfway through writing the
# weights of that checkpoint (the file is truncated to half, then the process dies before the atomic rename).
CHILD = r"""
import os, signal, sys
import torch
torch.set_num_threads(1)
kill_at = os.environ.get("KILL_AT_STEP")
if kill_at:
    import lmforge.train.checkpoint as checkpoint
    original = checkpoint.save_file
    def torn_save(tensors, filename, metadata=None):
        if f"checkpoint-{kill_at}-" in filename:
            original(tensors, filename, metadata=metadata)
            size = os.path.getsize(filename)
            os.truncate(filename, size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(tensors, filename, metadata=metadata)
    checkpoint.save_file = torn_save
from lmforge.cli import main
main(sys.argv[1:])
"""
