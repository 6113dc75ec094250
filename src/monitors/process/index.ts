export { createListenerSource, listeningPorts, listeningPortsAsync, listeningSockets, parseSsListeners, SS_LISTENERS, type ListenerDump } from './listeners.js';
