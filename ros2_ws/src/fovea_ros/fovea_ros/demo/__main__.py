import sys

from fovea_ros.demo import main

sys.exit(main())
