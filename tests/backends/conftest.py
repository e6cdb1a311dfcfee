import sys
from pathlib import Path

# layer_cases.py lives beside the target test folders (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).parent))
