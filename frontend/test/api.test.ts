import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, checkEmbeddingModel, csrfToken, getEmbedding, ModelMismatchError, modelChangedTo, type ImageInfo } from '../src/api';

describe('ApiError maps DRF error shapes', () => {
  it('{"detail": ...}: the detail is the message; other keys stay data', () => {
    const e = ApiError.fromBody(409, 'Conflict', { detail: 'The embedding is not ready.', embedding_status: 'pending' });
    expect(e.message).toBe('The embedding is not ready.');
    expect(e.detail).toBe('The embedding is not ready.');
    expect(e.status).toBe(409);
    expect((e.body as { embedding_status: string }).embedding_status).toBe('pending');
  });
  it('field errors, nested serializers and non_field_errors', () => {
    const e = ApiError.fromBody(400, 'Bad Request', {
      segmentation: ['RLE size [2, 2] differs from the image size [321, 481].'],
      prompts: { point_labels: ['Not a valid integer.'] },
      non_field_errors: ['Something else.'],
    });
    expect(e.fieldErrors['segmentation']).toEqual(['RLE size [2, 2] differs from the image size [321, 481].']);
    expect(e.fieldErrors['prompts']).toEqual(['point_labels: Not a valid integer.']);
    expect(e.message).toBe('segmentation: RLE size [2, 2] differs from the image size [321, 481].; prompts: point_labels: Not a valid integer.; Something else.');
  });
  it('a list body and a non-JSON body', () => {
    expect(ApiError.fromBody(400, 'Bad Request', ['a', 'b']).message).toBe('a b');
    expect(ApiError.fromBody(500, 'Internal Server Error', '<html>oops</html>').message).toBe('HTTP 500 Internal Server Error');
  });
});

describe('csrfToken', () => {
  it('reads the csrftoken cookie', () => {
    expect(csrfToken('sessionid=x; csrftoken=abc%3D123; other=1')).toBe('abc=123');
    expect(csrfToken('sessionid=x')).toBeNull();
  });
});

describe('embeddings only from the decoder\'s model (issue 9)', () => {
  afterEach(() => vi.unstubAllGlobals());
  const image = { id: 7, embedding_url: '/api/images/7/embedding' } as ImageInfo;
  const answer = (modelId: string | null): Response =>
    new Response(new Uint8Array(8), { status: 200, headers: { 'X-Embedding-Dtype': 'float16', ...(modelId ? { 'X-Model-Id': modelId } : {}) } });

  it('asks for the decoder\'s model and accepts its embedding', async () => {
    const fetchMock = vi.fn(async () => answer('vit_b-aaaaaaaaaaaa'));
    vi.stubGlobal('fetch', fetchMock);
    const got = await getEmbedding(image, 'vit_b-aaaaaaaaaaaa');
    expect(got.modelId).toBe('vit_b-aaaaaaaaaaaa');
    expect(String((fetchMock.mock.calls[0] as unknown[])[0])).toContain('/api/images/7/embedding?model_id=vit_b-aaaaaaaaaaaa');
  });
  it('refuses an embedding of another model, or of no stated model', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => answer('default-bbbbbbbbbbbb')));
    await expect(getEmbedding(image, 'vit_b-aaaaaaaaaaaa')).rejects.toBeInstanceOf(ModelMismatchError);
    vi.stubGlobal('fetch', vi.fn(async () => answer(null)));
    await expect(getEmbedding(image, 'vit_b-aaaaaaaaaaaa')).rejects.toBeInstanceOf(ModelMismatchError);
    expect(() => checkEmbeddingModel('a', 'b')).toThrow(/reload the page/);
    expect(checkEmbeddingModel('a', 'a')).toBe('a');
  });
  it('recognises the server\'s "the project switched models" 409', () => {
    const changed = ApiError.fromBody(409, 'Conflict', { detail: 'This project now uses model x', code: 'model_changed', model_id: 'vit_h-cccccccccccc' });
    expect(modelChangedTo(changed)).toBe('vit_h-cccccccccccc');
    expect(modelChangedTo(ApiError.fromBody(409, 'Conflict', { detail: 'not ready', embedding_status: 'pending' }))).toBeNull();
    expect(modelChangedTo(new Error('x'))).toBeNull();
  });
});
