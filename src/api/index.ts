export { startApiServer, type ApiHandlers, type ApiServer } from './server.js';
export { createApiClient, type ApiClient } from './client.js';
export type { CreatePuRequest, EnrollContainerRequest, EnrollContainerResponse, PuInfo, FlowEntry, StatusResponse, RevokedFlowInfo } from './schemas.js';
export { API_VERSION } from './schemas.js';
export { startMetricsServer, isLoopback, type ListenAddress, type MetricsServer, type ProbeHandlers } from './metrics-server.js';
