// Docker containers as PUs: a monitor of the engine's events and the pure inspect extractor.
// See docs/docker.md.

export {
  createDockerMonitor,
  type DockerMonitor,
  type DockerMonitorOptions,
  type DockerMonitorEvents,
  type DockerEngine,
  type DockerPu,
  type DockerPuStop,
  type DockerPuStopReason,
  type CreatedContainer,
  netClsCgroupOf,
  type MonitorLogger,
} from './monitor.js';

export {
  puFromInspect,
  postureOf,
  type InspectLike,
  type ExtractedContainer,
  type DockerNetworkMode,
  type PostureFlag,
} from './extract.js';
