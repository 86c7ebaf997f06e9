// Another package whose plugin is also called "static-chains".
export const plugin = {
  name: "static-chains",
  version: "9.9.9",
  framework: "^0.1.0",
  register() {},
};
