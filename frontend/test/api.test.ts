import { describe, expect, it } from 'vitest';
import { ApiError, csrfToken } from '../src/api';

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
