export { RabbitMqLab, type RabbitMqLabOptions } from "./rabbitmq-lab.js";
export { freePort, waitForPort } from "./free-port.js";
export { NeutronServerLab, LAB_PHYSICAL_NETWORK, type NeutronServerLabOptions, type NeutronConfig } from "./neutron-server-lab.js";
export { NeutronApi, NeutronApiError, NOAUTH_PROJECT_ID, type NeutronResource, type NeutronFields } from "./neutron-api.js";
export { OsloPeer, OsloPeerError, type OsloMessage, type OsloReceived } from "./oslo-peer.js";
