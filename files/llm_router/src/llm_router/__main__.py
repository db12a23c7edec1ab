import sys

from llm_router.cli import main

sys.exit(main())
