#!/usr/bin/env bash
# Container entrypoint: ROS 2 + Fovea environment, Fast DDS shared-memory profile, engine cache folder.
set -e
# apt-installed ROS has /opt/ros/<distro>/setup.bash; the Jetson images (built from source) add install/.
for ros_setup in "/opt/ros/${ROS_DISTRO}/setup.bash" "/opt/ros/${ROS_DISTRO}/install/setup.bash"; do
  if [ -f "${ros_setup}" ]; then
    # shellcheck disable=SC1090
    source "${ros_setup}"
    break
  fi
done
# shellcheck disable=SC1091
source /opt/fovea/install/setup.bash
profile="/opt/fovea/install/share/fovea_bringup/config/middleware/fastdds_shm.xml"
if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ] && [ -f "${profile}" ]; then
  export FASTRTPS_DEFAULT_PROFILES_FILE="${profile}"
fi
mkdir -p "${FOVEA_ENGINE_CACHE}"
exec "$@"
