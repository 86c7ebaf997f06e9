export { OsloConfig, type OsloConfigEntry, type OsloValue, type OsloValueSource } from "./oslo-config.js";
export { readOsloConfigFile, readOsloConfigFiles, type OsloConfigFilesResult, type OsloConfigSource } from "./oslo-config-files.js";
export { OsloConfigError, describeLocation, type OsloConfigErrorCode, type OsloConfigLocation } from "./oslo-config-error.js";
export { parseOsloIni, type OsloIniEntry, type OsloIniFile } from "./oslo-ini-parser.js";
export { fileKey, normalizeGroup, optionKeys, osloOption, type OsloOption } from "./oslo-option.js";
export {
  booleanType,
  floatType,
  integerType,
  isMultiType,
  listType,
  multiType,
  portType,
  stringType,
  type NumberTypeOptions,
  type OsloMultiType,
  type OsloType,
  type StringTypeOptions,
} from "./oslo-types.js";
