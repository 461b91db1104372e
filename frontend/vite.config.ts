// Builds the annotate page bundle into the repo's static/app/ (served by Django at
// /static/app/) with stable names, and copies onnxruntime-web's wasm runtime next to it
// so nothing is ever fetched from a CDN.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'vite';
import { defineConfig } from 'vitest/config';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '../static/app');
// The plain (non-JSEP) threaded SIMD build is what `onnxruntime-web/wasm` loads.
const ORT_FILES = ['ort-wasm-simd-threaded.wasm', 'ort-wasm-simd-threaded.mjs'];

function copyOrtRuntime(): Plugin {
  return {
    name: 'copy-ort-runtime',
    apply: 'build',
    writeBundle() {
      const src = resolve(here, 'node_modules/onnxruntime-web/dist');
      mkdirSync(resolve(outDir, 'ort'), { recursive: true });
      for (const f of ORT_FILES) copyFileSync(resolve(src, f), resolve(outDir, 'ort', f));
    },
  };
}

export default defineConfig({
  base: '/static/app/',
  // The "extern wasm" build of onnxruntime-web imports its wasm glue (.mjs) from
  // env.wasm.wasmPaths at run time instead of inlining it, so the worker bundle stays
  // small and the threaded runtime loads from our own /static/app/ort/.
  resolve: { conditions: ['onnxruntime-web-use-extern-wasm', 'module', 'browser', 'development|production'] },
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    chunkSizeWarningLimit: 2048,
    rolldownOptions: {
      input: {
        annotate: resolve(here, 'src/annotate.ts'),
        dashboard: resolve(here, 'src/dashboard.ts'),
        exports: resolve(here, 'src/exports.ts'),
        projectNew: resolve(here, 'src/projectNew.ts'),
        upload: resolve(here, 'src/upload.ts'),
        settings: resolve(here, 'src/settings.ts'),
      },
      output: {
        entryFileNames: '[name].js',
        chunkFileNames: '[name].js',
        assetFileNames: '[name][extname]',
      },
    },
  },
  worker: {
    format: 'es',
    rolldownOptions: {
      output: { entryFileNames: '[name].js', chunkFileNames: '[name].js', assetFileNames: '[name][extname]' },
    },
  },
  plugins: [copyOrtRuntime()],
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
