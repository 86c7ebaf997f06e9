export { RabbitMqLab, type RabbitMqLabOptions } from "./rabbitmq-lab.js";
export { freePort, waitForPort } from "./free-port.js";
