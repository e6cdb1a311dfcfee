"""Session-wide test settings."""

import os
import tempfile

# The native code cache of this test session: hermetic (never the user's), shared by the
# parallel workers so a kernel compiled by one is loaded by the others.
os.environ.setdefault("NEURALC_CACHE_DIR", os.path.join(tempfile.gettempdir(),
                                                        f"neuralc-test-cache-{os.getppid()}"))
