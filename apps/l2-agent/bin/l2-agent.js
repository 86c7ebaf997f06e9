#!/usr/bin/env node
import "reflect-metadata";
import "../dist/main.js";
