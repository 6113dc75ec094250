export { createListenerSource, listeningPorts, listeningSockets, type ListenerDump } from './listeners.js';
