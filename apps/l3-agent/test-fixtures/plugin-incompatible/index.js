// A plugin built for a framework major that does not exist yet.
export default {
  name: "incompatible",
  version: "1.0.0",
  framework: "^9.0.0",
  register() {
    throw new Error("register must never run for an incompatible plugin");
  },
};
