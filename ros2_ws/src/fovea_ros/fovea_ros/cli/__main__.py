import sys

from fovea_ros.cli import main

sys.exit(main())
